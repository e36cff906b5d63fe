"""Datasets for training and evaluation: the project's own format (``format``) and readers that
turn public raw data into it (``hm``). Readers are imported from their modules on demand: they
pull pandas, which loading a dataset does not need."""

from .format import FORMAT, Dataset, Exhibition, Product, load_dataset, write_dataset

__all__ = ["FORMAT", "Dataset", "Exhibition", "Product", "load_dataset", "write_dataset"]
