"""Building a model: a T5 from scratch or from a checkpoint (full, LoRA, QLoRA), the from-scratch Stage-1
pretraining, the CPU/GPU scale of a build, and the run wiring both stages share."""
