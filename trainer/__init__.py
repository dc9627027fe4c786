"""The Anima LoRA trainer (issue 5). Not built yet: this package holds no code.

torch, diffusers and peft are imported only inside this package, and only
when a train command runs.
"""
