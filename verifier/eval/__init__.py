"""eval: which saved epoch? Generated samples verified against what their prompts and the character ask for.

One module per concept: the sample readers (`sidecar`, `comfyui`, `a1111`,
gathered by `samples`), the epoch in a LoRA file name (`epochs`), the spec
and each sample's checklist (`spec`), the asking (`evaluate`, through
verify's pool, store and batch jobs), the statistics (`stats`, pure), and
the report (`report`: eval.json and the console lines; `page`: eval.html).
"""
