"""segkit: semantic segmentation and salient object detection on the Res2Net backbone."""

__version__ = "0.1.0"
