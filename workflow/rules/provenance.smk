# Provenance: each rule's `upstream` param is a hash of every setting its inputs were made with,
# and of the code that made them (code_of, common.smk).
#
# Snakemake reruns a job whose params changed, but it does not look past an output that
# exists: if a changed setting's job was killed (its output deleted), the outputs below
# it still look current. Carrying the upstream settings as a param makes each of those
# jobs stale by itself, so the change is applied however the earlier run ended.
# Runtime knobs (the schema's x-runtime keys) are left out: they do not change results.

from unetflow.fingerprints import settings_fingerprint, store_fingerprint


def settings_hash(*parts):
    return settings_fingerprint(list(parts))


def ingest_settings(name):
    entry = dataset(name)
    made = [config["demo"] for key in ("images", "labels") if key in entry and made_by_a_rule(entry[key])]
    keys = ("images", "labels", "slices", "label_kind", "voxel_size", "ignore_label", "labelled_slices", "channel_axis")
    return [{key: entry.get(key) for key in keys}, config["normalize"],
            config["num_classes"], config["dims"], config["ngff"], made[:1], code_of("ingest"),
            code_of("demo_data") if made else None]


def weights_settings(name):
    return [ingest_settings(name), config["weights"], code_of("weights")]


def samples_settings(name, model):
    online = config["augment"]["mode"] == "online"
    return [weights_settings(name), config["augment"]["mode"], augment_settings(), model_sample_sizes(model),
            None if online else code_of("augment")]


@functools.cache  # a model file is hashed once per DAG, not once per job that uses it
def file_fingerprint(path):
    return store_fingerprint(path)


def model_provenance(model):
    if pretrained_file(model):
        return [{"file": pretrained_file(model)}, file_fingerprint(pretrained_file(model))]
    return [model_architecture(model), results_settings("train", model_train_settings(model)), code_of("train"),
            [samples_settings(name, model) for name in training_datasets()],
            [ingest_settings(name) for name in validation_datasets()]]


def prediction_provenance(model, name):
    return [model_provenance(model), ingest_settings(name), results_settings("predict"), code_of("predict")]


def tuning_provenance(model):
    return [[prediction_provenance(model, name) for name in validation_datasets()], config["tune"], code_of("tune")]


def segment_provenance(model):
    """Where the segment settings of a model's segmentations come from."""
    return tuning_provenance(model) if tuned() else config["segment"]


def segmentation_provenance(model, name):
    return [prediction_provenance(model, name), segment_provenance(model), code_of("segment")]


def upstream_of_data(wildcards):
    return settings_hash(ingest_settings(wildcards.dataset))


def upstream_of_samples(wildcards):
    return settings_hash(weights_settings(wildcards.dataset))


def upstream_of_model(wildcards):
    return settings_hash(model_provenance(wildcards.model))


def upstream_of_prediction(wildcards):
    return settings_hash(model_provenance(wildcards.model), ingest_settings(wildcards.dataset))


def upstream_of_tuning(wildcards):
    return settings_hash([prediction_provenance(wildcards.model, name) for name in validation_datasets()])


def upstream_of_segmentation(wildcards):
    tuning = tuning_provenance(wildcards.model) if tuned() else None
    return settings_hash(prediction_provenance(wildcards.model, wildcards.dataset), tuning)


def upstream_of_segmented(wildcards):
    """Of a model's segmentation of a dataset: for the rules that read it (evaluate, view, its tiff)."""
    return settings_hash(segmentation_provenance(wildcards.model, wildcards.dataset))


def upstream_of_tiff(wildcards):
    if wildcards.kind == "probabilities":
        return settings_hash(prediction_provenance(wildcards.model, wildcards.dataset))
    return upstream_of_segmented(wildcards)


def upstream_of_report():
    return settings_hash([segmentation_provenance(model, name) + [code_of("evaluate")] for model in active_models()
                          for name in prediction_datasets()])
