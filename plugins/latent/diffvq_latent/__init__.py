"""Continuous latent diffusion over a tokenizer's codebook vectors for diffvq (as Stable
Diffusion diffuses over its autoencoder's latents), shipped as a plugin package."""
