"""Where the model of iteration i comes from: the embedded base model (`model_cache`), policy ids and
each fine-tune's own directory (`policies`)."""
