"""The fine-tuning stage's names (issue 26): its neuron sets, what each is built from, and its measures.

Free of heavy imports: the Snakefile and the reporting registries read these at start-up. Set names
are the ``{neuron_set}`` wildcard of the ``finetune`` and ``evaluate_finetuned`` rules and the values
of ``evaluation.finetune.sets`` (config/schema.yaml lists them too; a test checks both agree).

Every drawn control is the conditions table's set of one seed (``evaluation.finetune.control_seed``)
at the main N, so it has as many neurons as the transfer set it matches, layer by layer for the
magnitude-matched sets. Type-1 and Type-2 together (N1 + N2 neurons) have their own control of that
size: the union of both types' magnitude-matched sets. LoRA gets as many trainable parameters as
the Type-1 set (the nearest count LoRA can reach, see ``finetune.lora_config_matching``).
"""

from __future__ import annotations

from transfer_neurons.names import ConditionKind, NeuronType, condition_name

BASE_SET = "base"  # the untrained model: evaluated, never trained
LORA_SET = "lora"
LORA_MATCHED_SET = "type1"  # LoRA gets as many trainable parameters as this set
# Each neuron set: the conditions (kind, neuron type) of the conditions table whose neurons it joins.
NEURON_SET_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "type1": ((ConditionKind.TRANSFER, NeuronType.TYPE1),),
    "type2": ((ConditionKind.TRANSFER, NeuronType.TYPE2),),
    "type1_type2": ((ConditionKind.TRANSFER, NeuronType.TYPE1), (ConditionKind.TRANSFER, NeuronType.TYPE2)),
    "magnitude_matched_type1": ((ConditionKind.MAGNITUDE_MATCHED, NeuronType.TYPE1),),
    "magnitude_matched_type1_type2": (
        (ConditionKind.MAGNITUDE_MATCHED, NeuronType.TYPE1),
        (ConditionKind.MAGNITUDE_MATCHED, NeuronType.TYPE2),
    ),
    "random_type1": ((ConditionKind.RANDOM, NeuronType.TYPE1),),
}
TRAINED_SETS = (*NEURON_SET_PARTS, LORA_SET)
EVALUATED_SETS = (BASE_SET, *TRAINED_SETS)

# measure -> the unit it is measured on (what a confidence interval resamples)
MEASURE_UNITS = {
    "l2_loss": "sentence",  # mean NLL per predicted token (nats) of a held-out L2 sentence
    "english_loss": "sentence",  # the same of its English side
    "qa_f1": "question",  # MKQA F1 of the greedy answer (the paper's QA protocol)
    "choice_accuracy": "item",  # the built-in multiple-choice task in the L2 (0/1)
    "knn_share": "pair",  # mutual k-NN share vs the base model's English states (the test dump), layer mean
    "knn_share_own": "pair",  # the same vs the evaluated model's own English states
}
LOWER_IS_BETTER = frozenset({"l2_loss", "english_loss"})


def set_conditions(name: str, control_seed: int) -> list[str]:
    """The condition names (``names.condition_name``, main N) whose neurons neuron set ``name`` joins."""
    if name not in NEURON_SET_PARTS:
        raise ValueError(
            f"evaluation.finetune.sets: {name!r} is not a neuron set (one of {', '.join(NEURON_SET_PARTS)})"
        )
    return [condition_name(kind, neuron_type, None if kind == ConditionKind.TRANSFER else control_seed)
            for kind, neuron_type in NEURON_SET_PARTS[name]]  # fmt: skip
