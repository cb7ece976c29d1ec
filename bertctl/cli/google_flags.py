"""Google's flag names, for users who type them from habit or from an old script.

Google's scripts (run_classifier.py, run_pretraining.py, create_pretraining_data.py,
extract_features.py) take `--learning_rate`, `--train_batch_size`, `--do_lower_case`...; bertctl's
flags are shorter and dashed. A flag of Google's that bertctl does not know gets a usage error
that names bertctl's own (left to Click, `--learning_rate` suggests `--language`).
"""

from __future__ import annotations

import re

# Google's flag -> what bertctl takes instead (a flag, or how the same thing is said).
GOOGLE_FLAGS = {
    "learning_rate": "--lr",
    "train_batch_size": "--batch-size",
    "num_train_epochs": "--epochs",
    "max_seq_length": "--max-seq-length",
    "warmup_proportion": "--warmup",
    "num_warmup_steps": "--warmup (a number of steps when 1 or more)",
    "num_train_steps": "--max-steps (finetune) or --steps (pretrain run)",
    "save_checkpoints_steps": "--save-every",
    "do_lower_case": "--uncased (and --cased for do_lower_case=False)",
    "init_checkpoint": "--model (a release folder, zip or checkpoint)",
    "bert_config_file": "--model (a release folder holds its bert_config.json)",
    "vocab_file": "--vocab, or --model (a release folder holds its vocab.txt)",
    "data_dir": "--data",
    "output_dir": "--out",
    "task_name": "the task as the first argument (bertctl finetune mrpc)",
    "do_train": "nothing: bertctl finetune trains and then evaluates",
    "do_eval": "nothing: bertctl finetune evaluates (or bertctl evaluate RUN)",
    "do_predict": "bertctl predict RUN",
    "eval_batch_size": "--batch-size of bertctl evaluate",
    "predict_batch_size": "--batch-size of bertctl predict",
    "input_file": "the data as the first argument (pretrain prepare CORPUS, pretrain run DATA)",
    "output_file": "--out",
    "max_predictions_per_seq": "--max-predictions",
    "masked_lm_prob": "--masked-lm-prob",
    "dupe_factor": "--dupe-factor",
    "short_seq_prob": "--short-seq-prob",
    "random_seed": "--seed",
    "do_whole_word_mask": "--whole-word-mask",
    "use_tpu": "nothing: bertctl runs on GPUs and the CPU",
}


def explain(message: str) -> str:
    """Click's "No such option" message, with bertctl's name for a flag of Google's.

    >>> explain("No such option: --learning_rate (Possible options: --language)")
    "No such option: --learning_rate, Google's name; bertctl calls it --lr"
    >>> explain("No such option: --frobnicate")
    'No such option: --frobnicate'
    """
    found = re.match(r"No such option: (--?([\w-]+))", message)
    if found is None:
        return message
    name = found.group(2).replace("-", "_")
    if name not in GOOGLE_FLAGS:
        return message
    return f"No such option: {found.group(1)}, Google's name; bertctl calls it {GOOGLE_FLAGS[name]}"
