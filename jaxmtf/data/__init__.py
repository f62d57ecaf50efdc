"""Datasets: the container format, validation, I/O and collection pipelines."""
from jaxmtf.data.dataset import (
    DatasetError,
    from_arrays,
    load,
    normalization_stats,
    normalize,
    read_sidecar,
    save,
    validate,
)
from jaxmtf.data.minari_import import from_minari
from jaxmtf.data.synthetic import discrete_one_step_dataset, one_step_dataset
