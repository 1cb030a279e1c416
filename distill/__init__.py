"""distill-factory: teacher generation with rejection sampling, distillation and evaluation (DeepSeek-R1 recipe)."""

__version__ = "0.1.0"
