"""The model-from-code file of the registered encoder: MLflow copies it into the model and runs it at load
time (with this package on the path, shipped as the model's code) to get the model object, instead of
unpickling one. See prodemb/encoder_pyfunc.py."""

import mlflow

from prodemb.encoder_pyfunc import EncoderPyfunc

mlflow.models.set_model(EncoderPyfunc())
