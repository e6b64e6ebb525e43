"""One library function per command: each takes the command's options (an ``argparse.Namespace``
or any object with the same attributes), runs its quantity through the library function that
``landscape analyze`` uses too, writes the output folder and returns what the command prints.

- :mod:`.inputs`: checkpoints, model and dataset from the options;
- :mod:`.hessian`: spectrum, trace and density of a checkpoint (``landscape hessian``);
- :mod:`.surface`: directions (made once, resumed) and the surface (``landscape surface``);
- :mod:`.features`: Fourier, variance, robustness, CKA and lesion results, reused through the
  result store (``landscape fourier|variance|robustness|cka|lesion``).
"""
