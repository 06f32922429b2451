"""The wire format of a train reply: which record carries what, so the client and the server agree in one place.

A train reply holds exactly one ArrayRecord (the update) and one MetricRecord (``num-examples``), as Flower's
aggregators require, plus two ConfigRecords: public metadata a real server would see, and an audit record with the
batch's sample indices (never pixels) that only the scorer reads. The interceptor drops the audit record from
everything an attack receives.
"""

from __future__ import annotations

#: What the server sends: the global weights, and a config holding ``server-round`` (Flower's strategies add it).
SERVER_ARRAYS = "arrays"
SERVER_CONFIG = "config"

#: The update (gradient or weights after local steps).
UPDATE = "arrays"
#: ``num-examples`` (the aggregation weight) and the client's training loss.
METRICS = "metrics"
#: Public metadata: client id, round, update kind, batch size, local steps, learning rate, the defense's name and,
#: under DP-SGD, the ε spent so far (a property of the mechanism, not of the data).
PUBLIC = "public"
#: Scorer-only: the indices of every image the client trained on this round, in training order (an epoch update
#: lists each image once per epoch).
AUDIT = "audit"

NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
INDICES = "indices"

#: A query reply: the record naming the client, and its key (the server maps node ids to clients with it).
IDENTITY = "identity"
CLIENT_ID = "client"
