"""Static parts of the HTML report: its only script, its style sheet, the viewer's frame.

The script's SHA-256 goes into the page's Content-Security-Policy
(``editmetrics.analysis.report.build_report``): change it freely, the hash follows.
"""

# The page's only script: sorting, filters, the full-size viewer, #sort= and
# #view= links, and a check that marks images which failed to decode (and
# counts those that did, for tests).
SCRIPT = """
(function () {
  var records = document.getElementById('records');
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') return null;
    var n = Number(v);  // reads 'Infinity' and '-Infinity' too
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(table, th, asc) {
    var col = parseInt(th.getAttribute('data-col'), 10);
    table.querySelectorAll('th[data-col]').forEach(function (o) { o.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // missing scores always last
      if (y === null) return -1;
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th[data-col]').forEach(function (th) {
      th.addEventListener('click', function () { sortBy(table, th, th.getAttribute('data-dir') !== 'asc'); });
    });
  });
  // Filters: text (id, instruction, group, errors), group, only records with errors.
  var ftext = document.getElementById('filter-text'), fcat = document.getElementById('filter-cat');
  var ferr = document.getElementById('filter-err'), fcount = document.getElementById('filter-count');
  function applyFilters() {
    if (!records) return;
    var q = ftext ? ftext.value.trim().toLowerCase() : '', c = fcat ? fcat.value : '', e = ferr && ferr.checked;
    var rows = records.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var ok = (!q || (r.getAttribute('data-search') || '').indexOf(q) >= 0) &&
               (!c || r.getAttribute('data-cat') === c) && (!e || r.hasAttribute('data-err'));
      r.hidden = !ok;
      if (ok) shown += 1;
    }
    if (fcount) fcount.textContent = shown + ' of ' + rows.length + ' records shown';
  }
  [ftext, fcat, ferr].forEach(function (el) {
    if (el) { el.addEventListener('input', applyFilters); el.addEventListener('change', applyFilters); }
  });
  applyFilters();
  // Full-size viewer: the row's <template class="full"> cloned into #viewer.
  var viewer = document.getElementById('viewer'), vbody = document.getElementById('viewer-body');
  var vtitle = document.getElementById('viewer-title');
  function openViewer(tr) {
    var tpl = tr && tr.querySelector('template.full');
    if (!tpl || !viewer) return;
    vbody.textContent = '';
    vbody.appendChild(tpl.content.cloneNode(true));
    vtitle.textContent = tr.getAttribute('data-id');
    viewer.setAttribute('data-open', tr.getAttribute('data-id'));
    viewer.hidden = false;
    viewer.scrollTop = 0;
  }
  function closeViewer() {
    if (!viewer) return;
    viewer.hidden = true;
    viewer.removeAttribute('data-open');
    vbody.textContent = '';
  }
  if (records) {
    records.addEventListener('click', function (ev) {
      var fig = ev.target.closest ? ev.target.closest('td.images figure') : null;
      if (fig) openViewer(fig.closest('tr'));
    });
  }
  if (viewer) {
    document.getElementById('viewer-close').addEventListener('click', closeViewer);
    document.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeViewer(); });
    ['boxes', 'masks'].forEach(function (name) {
      var box = document.getElementById('ov-' + name);
      box.addEventListener('change', function () { viewer.classList.toggle('no-' + name, !box.checked); });
    });
  }
  // Links: #sort=KEY or #sort=KEY:asc (descending by default), #view=ID opens that record.
  function fromHash() {
    var hash = decodeURIComponent(location.hash);
    var m = /^#sort=(.+?)(?::(asc|desc))?$/.exec(hash);
    if (m && records) {
      records.querySelectorAll('th[data-col]').forEach(function (th) {
        if (th.getAttribute('data-key') === m[1]) sortBy(records, th, m[2] === 'asc');
      });
    }
    var v = /^#view=(.+)$/.exec(hash);
    if (v && records) {
      Array.prototype.forEach.call(records.tBodies[0].rows, function (r) {
        if (r.getAttribute('data-id') === v[1]) openViewer(r);
      });
    }
  }
  fromHash();
  window.addEventListener('hashchange', fromHash);
  window.addEventListener('load', function () {
    var ok = 0;
    document.querySelectorAll('img').forEach(function (img) {
      if (img.complete && img.naturalWidth > 0) { ok += 1; } else { img.classList.add('broken'); }
    });
    document.body.setAttribute('data-images-ok', String(ok));
  });
  document.body.setAttribute('data-script', 'ran');
})();
"""

STYLE = """
body { font-family: sans-serif; margin: 1.2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; }
.wrap { overflow: auto; max-width: 100%; }
table.summary td.text { max-width: 30em; overflow-wrap: anywhere; }
td.reasons { text-align: left; font-size: 85%; min-width: 16em; max-width: 36em; }
.dir { color: #555; font-weight: normal; }
table.sortable th[data-col] { cursor: pointer; }
th[data-dir=asc]::after { content: " \\25B2"; }
th[data-dir=desc]::after { content: " \\25BC"; }
/* records: scroll inside the table, sticky header row and id column */
.table-wrap { overflow: auto; max-height: calc(100vh - 4em); border: 1px solid #bbb; }
table.records { border-collapse: separate; border-spacing: 0; margin: 0; }
table.records th, table.records td { border-width: 0 1px 1px 0; }
table.records thead th { position: sticky; top: 0; z-index: 2; box-shadow: 0 1px 0 #999; }
table.records tbody td:first-child { position: sticky; left: 0; z-index: 1; background: #fff; box-shadow: 1px 0 0 #999; }
table.records thead th:first-child { left: 0; z-index: 3; }
table.records td.id { min-width: 8em; max-width: 14em; overflow-wrap: anywhere; }
table.records td.cat { min-width: 6em; max-width: 12em; overflow-wrap: anywhere; }
table.records td.instr { min-width: 14em; max-width: 22em; overflow-wrap: break-word; }
table.records td.err { color: #a00; font-size: 85%; text-align: left; min-width: 18em; max-width: 34em;
  overflow-wrap: anywhere; }
table.records td.err .notes { max-height: 7.5em; overflow-y: auto; }
table.records td.err .notes > div { margin-bottom: 2px; }
table.records th.score { min-width: 5.5em; max-width: 10em; white-space: normal; overflow-wrap: anywhere; }
table.records td.score { white-space: nowrap; }
table.records td.fail { color: #a00; font-size: 85%; }
table.records td.na { color: #888; font-size: 85%; }
td.delta { background: #fafafa; }
th .run { color: #245; font-weight: normal; font-size: 85%; }
td.images { white-space: nowrap; text-align: left; }
td.images figure { cursor: zoom-in; }
td.images .none { display: inline-block; white-space: normal; width: 8em; overflow-wrap: anywhere; text-align: left; }
figure { display: inline-block; margin: 0 3px; text-align: center; font-size: 75%; vertical-align: top; }
img.broken { outline: 2px solid red; }
.filters { margin: 0.5em 0; display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
.filters input[type=search] { width: 22em; }
.hists svg { margin: 0 1em 1em 0; }
.none { color: #888; }
.better { color: #060; } .worse { color: #a00; }
#viewer { position: fixed; inset: 0; background: #fff; overflow: auto; z-index: 10; padding: 0.5em 1em; }
#viewer[hidden] { display: none; }
#viewer .bar { position: sticky; top: 0; left: 0; background: #fff; padding: 0.3em 0; display: flex; gap: 1.5em;
  align-items: center; border-bottom: 1px solid #ccc; z-index: 2; }
#viewer-title { font-weight: bold; }
#viewer .panels { display: flex; gap: 12px; align-items: flex-start; padding-top: 0.5em; }
#viewer figure.panel { margin: 0; text-align: left; font-size: 85%; flex: none; }
#viewer .stack { position: relative; }
#viewer .stack > img, #viewer .stack > svg { position: absolute; left: 0; top: 0; }
#viewer.no-boxes .ov.boxes, #viewer.no-masks .ov.mask { display: none; }
#viewer ul.legend { list-style: none; padding: 0; margin: 0.3em 0; max-width: 40em; }
#viewer .sw { display: inline-block; width: 0.9em; height: 0.9em; border: 2px solid; margin-right: 0.3em;
  vertical-align: middle; }
"""


VIEWER = ('<div id="viewer" hidden><div class="bar"><span id="viewer-title"></span>'
          '<label><input type="checkbox" id="ov-boxes" checked> boxes</label>'
          '<label><input type="checkbox" id="ov-masks" checked> mask overlays</label>'
          '<button type="button" id="viewer-close">close (Esc)</button></div><div id="viewer-body"></div></div>')

