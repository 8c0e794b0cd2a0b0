"""The compress stage's steps: distill, prune, export, quantize, build_engine, one
module each, on the folders of steps/common.py.

Every step runs as `python compress/<step>.py --model DIR --output OUT [--data-root R]`
with the same two folders. A step reads the model that the step before it in the
bundle's pipeline wrote (`OUT/<previous step>/`), or `--model` when it is the first,
and writes:

    OUT/<step>/            the step's model and its report.json
    OUT/model/             a copy of the newest step's folder: what evaluate reads
    OUT/report.json        {"steps": [...], "<step>": report, ..., "rows": [...],
                           "warnings": [...], "served": {...}}: every step so far, and
                           each one's row (steps/measure.py: its model beside its input)
    SERVE/<name>/1/        build_engine only: the served model where the server reads
                           it (`engines.place_for_serving`); SERVE is serve/ beside OUT

Without --model and --output (the k8s Jobs run the scripts bare) they default to
$LLMC_OUTPUT/model (train's output) and $LLMC_OUTPUT/compress; $LLMC_OUTPUT
defaults to outputs/, as for train.py.

Each folder is replaced in one rename, so an interrupted step never leaves half a
model, and re-running the stage starts again from `--model` (a step never reads its
own earlier output). The model folders are described in runtime/folders.py.

distill and prune train through the framework adapters (runtime/frameworks/), so
each is one function for torch and TensorFlow alike; the adapter is imported only
for the model's own format.
"""
