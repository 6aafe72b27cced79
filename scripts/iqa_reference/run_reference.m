% Computes the reference values in tests/data/iqa_reference.json with the
% authors' own MATLAB scripts, run in GNU Octave (docs/conventions.md,
% "Reference fixtures"). The scripts are NOT part of editmetrics: put them
% (and matlabPyrTools with its corrDn MEX compiled by `mkoctfile --mex`) on
% Octave's path first. Usage, in the folder written by tests/iqa_cases.py:
%   octave --no-gui -q --path SCRIPTS --path PYRTOOLS/MEX --path PYRTOOLS run_reference.m
pkg load image;
fid = fopen('cases.txt'); lines = textscan(fid, '%s %s %s'); fclose(fid);
names = lines{1};
out = fopen('reference_values.jsonl', 'w');
for i = 1:numel(names)
  name = names{i};
  ref = imread([name '_ref.png']); dist = imread([name '_dist.png']);
  g1 = double(rgb2gray(ref)); g2 = double(rgb2gray(dist));
  v.name = name;
  v.octave_rgb2gray_ref = sum(g1(:)); v.octave_rgb2gray_dist = sum(g2(:));
  v.ssim = ssim_index(g1, g2);                 % Wang 2004 ssim_index.m (no downsampling)
  v.ms_ssim = msssim(g1, g2);                  % Wang msssim.m + ssim_index_new.m, defaults
  v.gmsd = GMSD(g1, g2);                       % Xue GMSD.m
  v.vif = vifvec(g1, g2);                      % Sheikh & Bovik vifvec.m (sp5Filters pyramid)
  v.vifp = vifp_mscale(g1, g2);                % Sheikh & Bovik vifp_mscale.m
  [fs, fsc] = FeatureSIM(double(ref), double(dist));  % Zhang FeatureSIM.m on RGB 0-255
  v.fsim_gray = fs; v.fsim = fsc;
  fprintf(out, '%s\n', jsonencode(v));
  printf('%s done\n', name); fflush(stdout);
end
% Octave/MATLAB behaviours the scripts rely on, compared with MATLAB's documented results in the tests
p.name = '_probes';
p.imfilter_symmetric_even = imfilter([1 2 3 4 5], [1 1]/2, 'symmetric', 'same');
p.conv2_same_even = conv2([1 2 3 4 5], [1 1]/2, 'same');
p.rgb2gray_uint8 = double(rgb2gray(uint8(cat(3, [255 0 0 10], [0 255 0 200], [0 0 255 30]))));
p.round_half = round([0.5 1.5 2.5 -2.5]);
p.std2 = std2([1 2 3 4]);
fprintf(out, '%s\n', jsonencode(p));
fclose(out);
printf('octave %s, image package %s\n', version(), pkg('describe', 'image'){1}.version);
