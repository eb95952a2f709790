"""The README's screenshot: a view store opened in napari through napari-ome-zarr, as a user would.

Needs the ``viewer`` extra (napari with Qt) and a display; on a headless machine run it
under a virtual one::

    pip install -e ".[viewer]"        # and, on Debian/Ubuntu: apt install xvfb
    xvfb-run -a python docs/screenshot.py results/view/small/demo_test.ome.zarr docs/napari_demo.png
"""

from __future__ import annotations

import sys

import napari


def main(view: str, out: str) -> None:
    viewer = napari.Viewer(show=False)
    image, segmentation, *truth = viewer.open(view, plugin="napari-ome-zarr")
    segmentation.visible, segmentation.opacity = True, 0.45
    for layer in truth:  # the ground truth as outlines over the segmentation
        layer.visible, layer.contour, layer.opacity = True, 2, 1.0
    viewer.scale_bar.visible = True
    viewer.window.resize(1400, 900)
    viewer.screenshot(out, canvas_only=False)
    print(", ".join(f"{layer.name} (scale {tuple(layer.scale)})" for layer in viewer.layers))
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
