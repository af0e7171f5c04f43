"""Datasets: reading images and masks, the standard layouts (VOC, the saliency, camouflage and polyp families),
segkit's built-in generated data, the dataset checker and the training transforms."""
