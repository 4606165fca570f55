"""The selected student as an MLflow Model (the ``python_function`` flavor).

Input: a table with one column ``node_id`` (integer ids of the graph the student was searched
on). Output: one row per input row, ``node_id``, ``predicted_class`` and ``probability_<c>`` for
every class ``c`` (the softmax of the logits).

The model carries everything it needs to answer, as MLflow model artifacts: ``student/`` (the
weights and ``config.json`` that :func:`gkd_search.load_student` reads) and ``graph.pt`` (the
node features the student reads, a method's pre-propagated ones for InfGraND, and the CSR index
of the graph with its normalised edge weights: a :class:`~gkd_search.serving.ServingGraph`). It
answers through :func:`gkd_search.serving.answer`, the code path the ``request`` latency
protocol timed, which returns exactly the full-graph outputs the search evaluated::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/gkd-cora/1")
    model.predict(pd.DataFrame({"node_id": [0, 5, 42]}))

    mlflow models serve -m models:/gkd-cora/1 --env-manager local --host 127.0.0.1 --port 5001
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

STUDENT_ARTIFACT = "student"
GRAPH_ARTIFACT = "graph"
GRAPH_FILE = "graph.pt"
INPUT_COLUMN = "node_id"


def output_columns(num_classes: int) -> list[str]:
    return [INPUT_COLUMN, "predicted_class", *(f"probability_{c}" for c in range(num_classes))]


def signature(num_classes: int):
    """``node_id`` (long) in; ``node_id``, ``predicted_class`` (long), ``probability_<c>`` (double) out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    outputs = [ColSpec("long", INPUT_COLUMN), ColSpec("long", "predicted_class"),
               *(ColSpec("double", f"probability_{c}") for c in range(num_classes))]
    return ModelSignature(inputs=Schema([ColSpec("long", INPUT_COLUMN)]), outputs=Schema(outputs))


def node_ids_from(model_input: Any) -> np.ndarray:
    """The ``node_id`` column of a DataFrame (or a list / array of ids) as int64."""
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN not in model_input.columns:
            raise ValueError(f"the input needs a column {INPUT_COLUMN!r}; got columns {list(model_input.columns)}")
        values = model_input[INPUT_COLUMN].to_numpy()
    else:
        values = np.asarray(model_input)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{INPUT_COLUMN} must be a column of integer node ids, got {values.dtype} {values.shape}")
    return values.astype(np.int64)


class StudentModel(mlflow.pyfunc.PythonModel):
    """Answers ``node_id`` tables with the student's class probabilities and predicted class."""

    def load_context(self, context) -> None:
        from .serving import ServingGraph
        from .student import load_student

        self.student = load_student(context.artifacts[STUDENT_ARTIFACT])
        state = torch.load(Path(context.artifacts[GRAPH_ARTIFACT]), weights_only=True)
        self.graph = ServingGraph.from_state(state)
        self.graph.check_model(self.student.model)
        self.fanout = tuple(int(v) for v in self.student.config.get("serving", {}).get("fanout", ()))

    def predict(self, context, model_input: pd.DataFrame, params: Optional[dict[str, Any]] = None) -> pd.DataFrame:
        """One row per ``node_id``: ``predicted_class`` and ``probability_<c>`` (MLflow checks the
        input against the model's signature first; this checks the ids)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from .serving import answer

        try:
            ids = node_ids_from(model_input)
        except ValueError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        num_nodes = self.graph.num_nodes
        bad = ids[(ids < 0) | (ids >= num_nodes)]
        if bad.size:
            raise MlflowException(f"node_id {int(bad[0])} is not a node of the graph (ids 0..{num_nodes - 1})",
                                  error_code=INVALID_PARAMETER_VALUE)
        num_classes = int(self.student.config["num_classes"])
        if ids.size == 0:
            return pd.DataFrame({c: pd.Series(dtype="int64" if i < 2 else "float64")
                                 for i, c in enumerate(output_columns(num_classes))})
        generator = torch.Generator().manual_seed(0)  # a served fan-out samples the same way every time
        with torch.inference_mode():
            logits = answer(self.student.model, self.graph, torch.from_numpy(ids), self.student.num_hops,
                            self.fanout, generator)
        probabilities = torch.softmax(logits.double(), dim=-1).numpy()
        table = {INPUT_COLUMN: ids, "predicted_class": probabilities.argmax(axis=1).astype(np.int64)}
        table.update({f"probability_{c}": probabilities[:, c] for c in range(num_classes)})
        return pd.DataFrame(table)
