"""The Anima LoRA trainer: config, plan, data, models, LoRA, loop, checkpoints, preflight.

Built on diffusers (`CosmosTransformer3DModel`, `AnimaTextConditioner`,
`AutoencoderKLQwenImage`) and peft. torch, diffusers and peft are imported
only inside the modules that need them (`models`, `lora`, `loop`, ...), so
`trainer.config` and `trainer.plan` stay light. Imports `captions` (to read
captions), never `verifier`.
"""
