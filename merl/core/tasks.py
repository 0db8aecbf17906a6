"""The six downstream benchmark tasks (``shared/reference/benchmarks.md``).

Label columns are in the published order. ``ontology`` names the code system the labels
belong to; it is also the key under which knowledge-base entries list their codes
(``knowledge`` resolves every label of every task through it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    source: str  # shard source the task reads: ptbxl | cpsc2018 | csn
    ontology: str  # ptbxl_superclass | ptbxl_subclass | scp | cpsc | csn
    labels: tuple[str, ...]
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "ptbxl_super_class", "ptbxl", "ptbxl_superclass",
            ("HYP", "NORM", "MI", "CD", "STTC"),
            "PTB-XL diagnostic superclasses",
        ),
        Task(
            "ptbxl_sub_class", "ptbxl", "ptbxl_subclass",
            ("AMI", "LAFB/LPFB", "LVH", "STTC", "IMI", "SEHYP", "CRBBB", "WPW", "LAO/LAE",
             "NORM", "ISC", "AVB", "RAO/RAE", "LMI", "ISCI", "ISCA", "NST", "CLBBB", "ILBBB",
             "IRBBB", "PMI", "RVH", "IVCD"),
            "PTB-XL diagnostic subclasses",
        ),
        Task(
            "ptbxl_form", "ptbxl", "scp",
            ("PAC", "DIG", "HVOLT", "STD", "LPR", "QWAVE", "VCLVH", "NDT", "TAB", "LOWT",
             "ABQRS", "LNGQT", "PRC(S)", "NT", "STE", "NST", "PVC", "INVT", "LVOLT"),
            "PTB-XL form statements",
        ),
        Task(
            "ptbxl_rhythm", "ptbxl", "scp",
            ("SVARR", "BIGU", "STACH", "SARRH", "SBRAD", "TRIGU", "AFIB", "SR", "SVTAC",
             "PSVT", "AFLT", "PACE"),
            "PTB-XL rhythm statements",
        ),
        Task(
            "icbeb", "cpsc2018", "cpsc",
            ("AFIB", "VPC", "NORM", "1AVB", "CRBBB", "STE", "PAC", "CLBBB", "STD"),
            "CPSC2018 (ICBEB) nine classes",
        ),
        Task(
            "chapman", "csn", "csn",
            ("AQW", "UW", "SR", "WPW", "2AVB", "AT", "VB", "ARS", "STTC", "SA", "STE", "VPB",
             "TWO", "STTU", "ALS", "APB", "2AVB1", "PRIE", "CCR", "CR", "AF", "AVB", "QTIE",
             "LBBB", "VEB", "SVT", "RBBB", "1AVB", "STDD", "MI", "AFIB", "TWC", "PWC", "ERV",
             "RVH", "LVH", "ST", "JEB"),
            "Chapman-Shaoxing-Ningbo (CSN) conditions",
        ),
    )
}

# CPSC2018 REFERENCE.csv label numbers 1..9.
CPSC_CLASSES: tuple[str, ...] = ("NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE")


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
