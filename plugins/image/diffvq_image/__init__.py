"""Image modality for diffvq: PNG grid galleries, PSNR, and image data sets."""
