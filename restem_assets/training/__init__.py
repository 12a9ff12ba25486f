"""The M-step: which samples are trained on (`sft_selection`), the fine-tune itself (`finetune`), its
distributed form (`distributed`, `finetune_worker`) and the human-data baseline's reference solutions
(`human_solutions`)."""
