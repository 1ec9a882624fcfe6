"""Face data: the parametric face renderer (synthetic default data), folder readers, image validation,
the extending degradation model and the FFHQ five-point alignment."""
