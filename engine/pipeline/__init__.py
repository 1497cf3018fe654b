"""The edit pipeline: the seven stages (edit.py), the DDIM loop, key/value injection, the loaded model,
the VAE, frames, the inversion cache, export and metrics. It never imports the kernels, the runtime or
the benchmark: kernels are installed on the loaded model from above."""
