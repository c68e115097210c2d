"""Multinomial (mask-and-replace) discrete diffusion prior for diffvq: an alternative prior
shipped as a plugin package, registered through the `diffvq` entry-point group."""
