"""Merge Octave's output into tests/data/iqa_reference.json (docs/conventions.md, "Reference fixtures").

    python scripts/iqa_reference/collect.py IMGDIR OCTAVE_VERSION IMAGE_PKG_VERSION > tests/data/iqa_reference.json

IMGDIR holds cases.txt (from tests/iqa_cases.py) and reference_values.jsonl
(from run_reference.m)."""

import json
import os
import sys

SOURCES = {
    "ms_ssim": "msssim.m + ssim_index_new.m (Z. Wang; msssim.m from weizhou-geek/SFSN@7dc9d16262b06844b168dc4db071758aa2e77411 "
               "with its renamed call my_ssim_index_new -> ssim_index_new restored; ssim_index_new.m from "
               "zengzhengda/myNEWIQA@97e0eeaa622a1ea5f939de87f65da9c39c2f7fce); defaults K=[0.01 0.03], "
               "fspecial('gaussian',11,1.5), 5 levels, product",
    "ssim": "ssim_index.m (Z. Wang, 2003 release, no downsampling; "
            "zengzhengda/myNEWIQA@97e0eeaa622a1ea5f939de87f65da9c39c2f7fce)",
    "gmsd": "GMSD.m (W. Xue; SimonBarta/Metrics-for-360-pictures@63c9428e77cd2986c71de91a8ef0346f31edc115, whose "
            "conv2 -> convn edit was undone: identical on 2-D arrays)",
    "vif": "vifvec.m, vifsub_est_M.m, refparams_vecgsm.m, ind2wtree.m (H. R. Sheikh, LIVE release as bundled in "
           "MeTriX MuX, codeslake/PVDNet@f29db89ceac0ed521faf6fa25322a534f660cc58) with matlabPyrTools 1.3 "
           "(buildSpyr, sp5Filters, corrDn MEX compiled by mkoctfile --mex); vifvec.m calls vifsub_est_m, so the "
           "file was also provided under that lower-case name (MATLAB on a case-insensitive file system finds it)",
    "vifp": "vifp_mscale.m (H. R. Sheikh, LIVE release as bundled in MeTriX MuX, same commit as vif)",
    "fsim": "FeatureSIM.m (L. Zhang, FSIMc output; chaofengc/Face-Sketch-Wild@e24beebad3048c417d17e10b9a4e2764ec2954fe)",
    "fsim_gray": "FeatureSIM.m, FSIM output (luminance only)",
}


def main(folder: str, octave: str, image_pkg: str) -> None:
    hashes = {}
    with open(os.path.join(folder, "cases.txt")) as fh:
        for line in fh:
            name, ref, dist = line.split()
            hashes[name] = {"ref_sha256_16": ref, "dist_sha256_16": dist}
    cases = {}
    with open(os.path.join(folder, "reference_values.jsonl")) as fh:
        for line in fh:
            v = json.loads(line)
            name = v.pop("name")
            if name == "_probes":
                probes = v
            else:
                cases[name] = {**hashes[name], **v}
    out = {
        "_how": "Values of the original MATLAB scripts run in GNU Octave on the pairs of tests/iqa_cases.py; "
                "gray inputs are double(rgb2gray(uint8 RGB)), FSIM gets double(RGB). See docs/conventions.md.",
        "octave": octave,
        "octave_image_package": image_pkg,
        "driver": "scripts/iqa_reference/run_reference.m",
        "sources": SOURCES,
        "octave_probes": probes,
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
