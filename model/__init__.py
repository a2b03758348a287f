"""SHMamba and its parts: hyperbolic alignment, Mamba blocks (mamba-ssm / mambapy), cross fusion,
and the registered ablation variants.  Tensors in, tensors out."""
from .config import ModelConfigError, SHMambaConfig
from .shmamba import ModelOutput, SHMamba, build_model, count_parameters, load_state
from .ssm import BackendUnavailable, resolve_backend
from .variants import DEFAULT_VARIANT, VARIANTS, variant_config, variant_name

__all__ = [
    "SHMambaConfig", "SHMamba", "ModelOutput", "build_model", "count_parameters", "load_state",
    "VARIANTS", "DEFAULT_VARIANT", "variant_config", "variant_name", "resolve_backend",
    "BackendUnavailable", "ModelConfigError",
]
