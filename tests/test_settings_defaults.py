"""The settings dataclasses are the one place a quantity's defaults live: every public library
function of the curvature, surface and feature modules whose parameter is named like a field of
its quantity's settings takes that field's default, and every command-line option made from a
field (or named like one) has the field's default and choices. Both are introspected: the
functions with ``inspect.signature`` over the modules, the options from the parsers
``landscape/cli.py`` builds, so a new literal default anywhere fails here."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import pkgutil

import pytest

from landscape import settings as S
from landscape.cli import build_parser
from landscape.commands.options import settings_field

#: Which quantity's settings a module's functions take their defaults from.
MODULE_SETTINGS: dict[str, tuple[type, ...]] = {
    "landscape.curvature": (S.SpectrumSettings, S.CurvatureSettings),
    "landscape.curvature.spectrum": (S.SpectrumSettings,),
    "landscape.surface": (S.SurfaceSettings,),
    "landscape.surface.directions": (S.SurfaceSettings,),
    "landscape.features.fourier": (S.FourierSettings,),
    "landscape.features.variance": (S.VarianceSettings,),
    "landscape.features.robustness": (S.RobustnessSettings,),
    "landscape.features.similarity": (S.CKASettings,),
    "landscape.features.lesion": (S.LesionSettings,),
    "landscape.runners": (S.ImagesSettings,),
}

#: (function, parameter) named like a field but meaning another thing, with the reason.
NOT_THE_FIELD: dict[tuple[str, str], str] = {
    **{(f, "augment"): "the augmentation transform itself (None: none); the settings hold the "
                       "on/off flag (default off)"
       for f in ("landscape.curvature.base.CurvatureOperator.__init__",
                 "landscape.curvature.estimates.curvature_operator",
                 "landscape.curvature.estimates.curvature_estimates",
                 "landscape.curvature.spectrum.max_eigenvalue_spectrum",
                 "landscape.surface.compute.compute_surface",
                 "landscape.surface.evaluate.SurfaceEvaluator.__init__")},
    ("landscape.curvature.hessian_operator.dense_hessian", "method"):
        "how the reference differentiates (func/autograd), not the eigen solver",
    ("landscape.surface.evaluate.SurfaceEvaluator.prepare", "plan"):
        "a resolved Plan object (None: measure), not the plan's KEY=VALUE string",
    ("landscape.surface.compute.compute_surface", "wd"):
        "the resolved L2 factor (a number); the settings' None (the checkpoint's training "
        "weight decay) is resolved by the surface runner (landscape.runners.loss)",
    ("landscape.features.lesion.lesion_study", "samples"):
        "None: every image of the data given; the command and analyze subset the data to "
        "LesionSettings.samples before calling it",
}


#: (function, parameter) -> the settings field it is, where the estimator names it in its own
#: words (the introspection matches the other parameters by name).
NAMED_OTHERWISE: dict[tuple[str, str], tuple[type, str]] = {
    ("landscape.curvature.trace.hutchpp_trace", "n_products"): (S.CurvatureSettings,
                                                                "trace_products"),
    ("landscape.curvature.trace.hutchinson_trace", "n_probes"): (S.CurvatureSettings,
                                                                 "trace_products"),
    ("landscape.curvature.density.slq_density", "n_probes"): (S.CurvatureSettings,
                                                              "density_probes"),
    ("landscape.curvature.density.slq_density", "steps"): (S.CurvatureSettings,
                                                           "density_steps"),
}


def _modules():
    for name in MODULE_SETTINGS:
        mod = importlib.import_module(name)
        yield mod, MODULE_SETTINGS[name]
        for sub in pkgutil.iter_modules(getattr(mod, "__path__", [])):
            if f"{name}.{sub.name}" not in MODULE_SETTINGS:  # a module's own entry decides
                yield importlib.import_module(f"{name}.{sub.name}"), MODULE_SETTINGS[name]


def _public_functions(mod):
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{mod.__name__}.{name}", obj
        elif inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
            for attr, fn in vars(obj).items():
                if inspect.isfunction(fn) and (attr == "__init__" or not attr.startswith("_")):
                    yield f"{mod.__name__}.{name}.{attr}", fn


def _library_parameters():
    out = []
    for mod, classes in _modules():
        for qual, fn in _public_functions(mod):
            for p in inspect.signature(fn).parameters.values():
                if p.default is inspect.Parameter.empty:
                    continue
                if (qual, p.name) in NAMED_OTHERWISE:
                    cls, name = NAMED_OTHERWISE[qual, p.name]
                    field = {f.name: f for f in dataclasses.fields(cls)}[name]
                    out.append((qual, p.name, p.default, cls, field.default))
                    continue
                for cls in classes:
                    fields = {f.name: f for f in dataclasses.fields(cls)}
                    if p.name in fields:
                        out.append((qual, p.name, p.default, cls, fields[p.name].default))
    return out


LIBRARY = _library_parameters()


def test_the_introspection_sees_the_functions_that_matter():
    seen = {(q, n) for q, n, *_ in LIBRARY}
    for q, n in [("landscape.features.similarity.cka_analysis", "batch_size"),
                 ("landscape.features.robustness.noise_robustness", "norm"),
                 ("landscape.curvature.lanczos.top_eigenvalues", "max_iter"),
                 ("landscape.curvature.lanczos.lanczos_eigenpairs", "max_iter")]:
        assert (q, n) in seen, (q, n)
    assert len(LIBRARY) > 30


@pytest.mark.parametrize("qual,name,default,cls,field_default", LIBRARY,
                         ids=[f"{q.split('landscape.')[-1]}:{n}:{c.__name__}"
                              for q, n, _, c, _ in LIBRARY])
def test_library_defaults_are_the_settings(qual, name, default, cls, field_default):
    if (qual, name) in NOT_THE_FIELD:
        return
    assert default == field_default, (
        f"{qual}({name}={default!r}) but {cls.__name__}.{name} = {field_default!r}: take the "
        f"default from the settings ({cls.__name__}.{name}), or add it to NOT_THE_FIELD with "
        "the reason it is another thing")


def test_every_exemption_is_still_needed():
    seen = {(q, n) for q, n, *_ in LIBRARY}
    assert set(NOT_THE_FIELD) <= seen and set(NAMED_OTHERWISE) <= seen


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


def _options():
    out = []
    for command, p in _commands():
        classes = getattr(p, "settings_classes", ())
        for a in p._actions:
            if a.dest in ("help", "func"):
                continue
            out.append((command, a, classes))
    return out


OPTIONS = _options()


def _id(item):
    command, a, _ = item
    return f"{command}:{a.option_strings[0] if a.option_strings else a.dest}"


def test_the_commands_say_which_settings_they_build():
    built = {c: [k.__name__ for k in getattr(p, "settings_classes", ())] for c, p in _commands()}
    assert built["hessian"] == ["SpectrumSettings", "CurvatureSettings", "LossSettings"]
    assert built["surface"] == ["SurfaceSettings"]
    for c, k in [("fourier", "FourierSettings"), ("variance", "VarianceSettings"),
                 ("robustness", "RobustnessSettings"), ("cka", "CKASettings"),
                 ("lesion", "LesionSettings")]:
        assert built[c] == [k, "ImagesSettings"]
    linked = sum(settings_field(a) is not None for _, a, _ in OPTIONS)
    assert linked >= 50  # hessian 27, surface 7, features 22


@pytest.mark.parametrize("item", OPTIONS, ids=[_id(i) for i in OPTIONS])
def test_every_option_takes_default_and_choices_from_the_settings(item):
    command, a, classes = item
    link = settings_field(a)
    if link is None:
        names = {f.name for cls in classes for f in dataclasses.fields(cls)}
        assert a.dest not in names or getattr(a, "settings_unrelated", None), (
            f"`landscape {command}` option {a.option_strings} is named like a settings field "
            "but is not made from it (commands/options.py: settings_option, link or unrelated)")
        return
    cls, name = link
    assert cls in classes, f"{command}: {cls.__name__} is not among the settings it builds"
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if a.settings_default_doc:
        assert a.default is None, (command, a.option_strings)
    elif a.settings_convert is not None:
        assert a.default == a.settings_convert(f.default)
    else:
        assert a.default == f.default and type(a.default) is type(f.default), (
            f"`landscape {command}` {a.option_strings} default {a.default!r} but "
            f"{cls.__name__}.{name} = {f.default!r}")
    choices = f.metadata.get("choices")
    if choices is None:
        assert a.choices is None
    elif a.nargs != 0:  # a flag has no choices
        want = {c for c in choices if not (a.settings_default_doc and c == "" == f.default)}
        assert a.choices is not None and set(a.choices) == want, (command, a.option_strings)
