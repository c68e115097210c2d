"""Block-diffusion prior for diffvq (BD3-LM, Arriola et al. 2025): autoregressive over blocks of
tokens, absorbing (masked) diffusion within a block, shipped as a plugin package registered
through the `diffvq` entry-point group. `block_size: 1` is the autoregressive prior's chain rule,
`block_size` >= the sequence length is masked diffusion."""
