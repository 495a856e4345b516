"""A stand-in for someone else's method: reads an exported set (KEY.png + KEY_mask.png), writes KEY.png
restorations with OpenCV's Telea inpainting and KEY.mask.png as its "predicted" mask. Never imports blindbench.

    python telea_predict.py EXPORT_DIR OUT_DIR
"""

import sys
from pathlib import Path

import cv2

source, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for mask_path in sorted(source.glob("*_mask.png")):
    key = mask_path.name.removesuffix("_mask.png")
    image = cv2.imread(str(source / f"{key}.png"), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(out / f"{key}.png"), cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA))
    cv2.imwrite(str(out / f"{key}.mask.png"), mask)
