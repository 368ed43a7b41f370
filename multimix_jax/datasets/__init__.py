"""Real chest X-ray data (docs/multimix.md, Data): :mod:`.image_io` (any file to uint8 gray,
masks to {0, 1}), :mod:`.layouts` (each download's folder layout to records), :mod:`.folders`
(records and folders to arrays: ``load_source(kind='folder')``), :mod:`.builders` (TFDS
ArrayRecord builders; the only module importing tensorflow_datasets: import it explicitly)."""

