"""In-graph training: LoRA, fine-tuning, DMD distillation (public API filled in as modules land)."""
