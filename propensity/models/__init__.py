"""Training, calibration, evaluation and the model artifact: plain numbers and LightGBM text, never pickle."""
