"""adamrepro: a fast, faithful reproduction of Kingma & Ba, 'Adam' (ICLR 2015)."""

__version__ = "0.1.0"
