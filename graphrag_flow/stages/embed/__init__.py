"""The embed stage, one pass per vector field: every source row gets exactly one current vector
in its LanceDB table, which is the stage's checkpoint.

field.py brings a table to its source rows (embedding what is missing, batch by batch, merging
each batch as it comes, deleting what is stale, then counting again and repairing); backends.py
says where vectors come from (the offline model, or an OpenAI-compatible API) and what every
vector records as its `model`; offline_model.py is the offline ONNX model itself.
"""
