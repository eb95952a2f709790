"""unetflow: the U-Net of Ronneberger et al. (2015) as a Snakemake workflow."""

__version__ = "0.1.0"
