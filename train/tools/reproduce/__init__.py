"""`seqmix reproduce NAME`: re-run a published finding from its folder under experiments/reproduce/.

A reproduction is data, not code: `experiments/reproduce/NAME/reproduce.yaml` lists `seqmix fit` / `sweep` /
`evaluate` steps with presets (`tiny` for the test suite, `full` for the real run), the files whose rows form the
results, and the paper's numbers to set ours beside; its README states the claim and its source.
"""
