"""One library function per command: each takes the settings objects the command built from
its options and a job (inputs, output folder, how it runs; no argparse namespace), runs its
quantity through the runner (:mod:`landscape.runners`) that ``landscape analyze`` calls too,
writes the output folder and returns what the command prints.

- :mod:`.inputs`: checkpoints, model and dataset from the options;
- :mod:`.hessian`: spectrum, and the extreme eigenvalues, trace and density of the averaged loss
  (``landscape hessian``);
- :mod:`.surface`: directions (made once, resumed) and the surface (``landscape surface``);
- :mod:`.features`: Fourier, variance, robustness, CKA and lesion results, reused through the
  result store (``landscape fourier|variance|robustness|cka|lesion``).
"""
