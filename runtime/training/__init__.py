"""Horovod training, as the generated train/train.py runs it.

`common` holds what torch and TensorFlow share (arguments, the step plan, the loop
over epochs and micro-batches, metrics lines, checkpoint policy, the host's random
state); `torch_loop` and `tf_loop` hold each framework's model, optimizer and step.
A TensorFlow bundle imports `common` and `tf_loop` only, never torch.
"""
