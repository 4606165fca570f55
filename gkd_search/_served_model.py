"""The code of the logged student model (MLflow "models from code"): MLflow copies this file into
the model and runs it on load, so the model is rebuilt from code and artifacts, never unpickled."""

import mlflow

from gkd_search.pyfunc import StudentModel

mlflow.models.set_model(StudentModel())
