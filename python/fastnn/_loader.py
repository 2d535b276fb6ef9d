"""Opens the kernel library compiled for this CPU, before fastnn.ops imports fastnn._core (whose kernel entry
points then bind to it; CMakeLists.txt describes the layout). The level is the highest one built that the CPU
supports, capped by the environment variable FASTNN_CPU=baseline|avx2|avx512."""
import os

from . import _dispatch

LEVELS = ("baseline", "avx2", "avx512")  # x86-64 kernel levels, lowest first
build = _dispatch.build  # levels built, compiler, flags (cpp/loader/build_config.h.in)
cpu_features = _dispatch.cpu_features  # the CPU features fastnn checks that this CPU and OS provide
supported_levels = _dispatch.supported_levels  # the levels this CPU can run, lowest first


def choose_level(built, supported, requested):
    """(level, how it was chosen): the kernel library to open, of the levels `built` and `supported`."""
    if requested == "native":  # a developer's extra -march=native library (FASTNN_LEVELS=...;native)
        if "native" not in built:
            raise ImportError(f"FASTNN_CPU=native, but this build has no native library (built: {', '.join(built)})")
        return "native", "FASTNN_CPU=native"
    if requested and requested not in LEVELS:
        raise ValueError(f"FASTNN_CPU={requested!r}: expected one of {', '.join(LEVELS)} (or unset)")
    cap = LEVELS.index(requested) if requested else len(LEVELS) - 1
    usable = [level for level in LEVELS[:cap + 1] if level in built and level in supported]
    if not usable:
        raise ImportError(f"fastnn: no kernel library this CPU can run (levels built: {', '.join(built)}; "
                          f"this CPU runs {', '.join(supported)}" + (f"; FASTNN_CPU={requested}" if requested else "")
                          + ")")
    level = usable[-1]
    if requested:
        return level, f"FASTNN_CPU={requested}" + ("" if level == requested else f" (capped to {level})")
    return level, ("the highest level this CPU supports" if level == supported[-1] else "the highest level built")


if build["one_library"]:  # FASTNN_NATIVE=ON: the kernels are inside _core
    cpu_level, cpu_level_chosen_by = "native", "FASTNN_NATIVE=ON build: one library for the building machine"
else:
    cpu_level, cpu_level_chosen_by = choose_level(build["levels"], supported_levels(),
                                                  os.environ.get("FASTNN_CPU", "").strip().lower())
    _dispatch.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"libfastnn_kernels_{cpu_level}.so"))
