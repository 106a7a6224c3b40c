"""The benchmark (`scripts/bench`): the pipeline beside its ceilings (ONNX Runtime alone, a raw
confluent-kafka loop) and its peers (a per-event Faust agent, Quix Streams), on one broker and the same
generated data, so that every ratio it reports comes from one run on one machine."""
