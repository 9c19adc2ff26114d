"""Data layer: IDX files, in-memory data sets and verified downloads (Handbook Ch. 5-6).

Importing this package registers the built-in data sets in ``cnnlab.registry.DATASETS``:
``datasets`` (Fashion-MNIST, MNIST, synthetic), then ``cifar`` and ``folder`` (image folders),
which build on it. Any ``import cnnlab.data.x`` runs this file first, so a data set named in a
config is always registered.
"""

# The data-set families register their builders when imported (cifar and folder build on
# datasets, which the import of either loads first).
from cnnlab.data import cifar, folder  # noqa: F401  (registration)
from cnnlab.data.datasets import (
    DATA_ENV_VAR,
    DatasetNotFoundError,
    ImageDataset,
    dataset_dir_candidates,
    default_cache_dir,
    find_dataset_dir,
    list_datasets,
    load_dataset,
)
from cnnlab.data.download import DownloadError, fetch_dataset
from cnnlab.data.idx import IdxError, read_idx, read_image_label_pair, write_idx

__all__ = [
    "DATA_ENV_VAR",
    "DatasetNotFoundError",
    "DownloadError",
    "IdxError",
    "ImageDataset",
    "dataset_dir_candidates",
    "default_cache_dir",
    "fetch_dataset",
    "find_dataset_dir",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "read_image_label_pair",
    "write_idx",
]
