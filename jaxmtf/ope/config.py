"""The OPE config's fields (jaxmtf/configs/ope.py documents each), checked before anything is built.

The same schema as the training driver's (jaxmtf.schema): a bad value fails
with one line naming the field, the value and what was expected, and an
unknown field with the nearest known names.
"""
from jaxmtf import schema
from jaxmtf.core.run_config import ConfigError, check_chunk_multiples

OPE_FIELDS = {
    "dataset": schema.string(),
    "policies": schema.string(),
    "seed": schema.integer(0, 2**32 - 1),
    "discount": schema.real(0, 1, lo_open=True),
    "target_sigma": schema.real(0, lo_open=True),
    "target_epsilon": schema.real(0, 1, lo_open=True, required=False),  # discrete targets' smoothing (default 0.1)
    "max_weight": schema.real(0),
    "noisy_switch_sigma": schema.real(0, lo_open=True),
    "num_cells": schema.integer(1),
    "num_components": schema.integer(1),
    "bootstrap_replicates": schema.integer(2),
    "ci_level": schema.real(0, 1, lo_open=True, hi_open=True),
    "eval_users": schema.integer(0),
    "top_k": schema.integer(1, required=False),  # default 3
    "support_threshold": schema.real(0, lo_open=True, required=False),  # default 0.1
    "fqe": schema.Field(lambda v: hasattr(v, "items"), "a ConfigDict of FQE's fields"),
    # ----- issue 20: NCIS, MTF-GAUC, model-based OPE (optional: absent = their defaults, extra_rows.py) -----
    "ncis_cap": schema.real(0, lo_open=True, required=False),
    "gauc_users": schema.integer(0, required=False),
    "gauc_weight": schema.choice(("impressions", "reward", "uniform"), required=False),
    "model_based": schema.Field(lambda v: hasattr(v, "items"), "a ConfigDict of model-based OPE's fields", False),
}

MODEL_BASED_FIELDS = {
    "enabled": schema.boolean(),
    "num_members": schema.integer(1),
    "seed": schema.integer(0, 2**32 - 1),
    "hidden_dims": schema.widths(),
    "learning_rate": schema.real(0, lo_open=True),
    "num_updates": schema.integer(1),
    "batch_size": schema.integer(1),
    "chunk_size": schema.integer(1),
    "horizon": schema.integer(1),
    "lcb_coef": schema.real(0),
    "checkpoint_every": schema.integer(0),
    "keep_checkpoints": schema.integer(1),
    "eval_every": schema.integer(0, 0),
    "seed_group_size": schema.optional(schema.integer(0)),
    "force_new_run": schema.boolean(required=False),
}

FQE_FIELDS = {
    "num_seeds": schema.integer(1),
    "seed": schema.integer(0, 2**32 - 1),
    "num_updates": schema.integer(1),
    "batch_size": schema.integer(1),
    "chunk_size": schema.integer(1),
    "learning_rate": schema.real(0, lo_open=True),
    "hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "target_update_interval": schema.integer(1),
    "num_action_samples": schema.integer(1),
    "lcb_coef": schema.real(0, required=False),  # default 1.0
    "checkpoint_every": schema.integer(0),
    "keep_checkpoints": schema.integer(1),
    "eval_every": schema.integer(0, 0),
    "seed_group_size": schema.optional(schema.integer(0)),
    "force_new_run": schema.boolean(required=False),
}


def validate_ope_config(config) -> None:
    """Raises ConfigError naming the first bad field of an OPE config."""
    schema.check_fields(config, OPE_FIELDS, "", ConfigError)
    schema.check_fields(config.fqe, FQE_FIELDS, "fqe.", ConfigError)
    check_chunk_multiples(config.fqe)
    if "model_based" in config:
        schema.check_fields(config.model_based, MODEL_BASED_FIELDS, "model_based.", ConfigError)
        if int(config.model_based.seed) + int(config.model_based.num_members) - 1 > 2**32 - 1:
            raise ConfigError(f"config field 'model_based.seed': got {config.model_based.seed}, expected "
                              f"seed + num_members - 1 <= {2**32 - 1}")
        try:
            check_chunk_multiples(config.model_based)
        except ConfigError as refused:  # the message names the field within the block
            raise ConfigError(str(refused).replace("config field '", "config field 'model_based.", 1)) from None
