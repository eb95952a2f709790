# Provenance: each rule's `upstream` param is a hash of every setting its inputs were made with.
#
# Snakemake reruns a job whose params changed, but it does not look past an output that
# exists: if a changed setting's job was killed (its output deleted), the outputs below
# it still look current. Carrying the upstream settings as a param makes each of those
# jobs stale by itself, so the change is applied however the earlier run ended.
# Runtime knobs (device, workers, Dask scheduler) are left out: they do not change results.

from unetflow.fingerprints import settings_fingerprint

RUNTIME_KEYS = ("device", "workers", "log_every", "checkpoint_every")  # train settings that change no result


def settings_hash(*settings):
    return settings_fingerprint(list(settings))


def ingest_settings(name):
    entry = dataset(name)
    made = [config["demo"] for key in ("images", "labels") if key in entry and made_by_a_rule(entry[key])]
    return [{key: entry.get(key) for key in ("images", "labels", "slices", "label_kind")},
            config["num_classes"], made[:1]]


def weights_settings(name):
    return [ingest_settings(name), config["weights"]]


def samples_settings(name, model):
    augment = {key: config["augment"][key] for key in ("mode", "samples", "seed", "transforms")}
    return [weights_settings(name), augment, model_sample_sizes(model)]


def model_provenance(model):
    train = model_train_settings(model)
    return [model_architecture(model), {key: value for key, value in train.items() if key not in RUNTIME_KEYS},
            [samples_settings(name, model) for name in training_datasets()],
            [ingest_settings(name) for name in validation_datasets()]]


def prediction_provenance(model, name):
    predict = {key: value for key, value in config["predict"].items() if key not in ("device", "batch_size")}
    return [model_provenance(model), ingest_settings(name), predict]


def segmentation_provenance(model, name):
    return [prediction_provenance(model, name), config["segment"]]


def upstream_of_data(wildcards):
    return settings_hash(ingest_settings(wildcards.dataset))


def upstream_of_samples(wildcards):
    return settings_hash(weights_settings(wildcards.dataset))


def upstream_of_model(wildcards):
    return settings_hash(model_provenance(wildcards.model))


def upstream_of_prediction(wildcards):
    return settings_hash(model_provenance(wildcards.model), ingest_settings(wildcards.dataset))


def upstream_of_segmentation(wildcards):
    return settings_hash(prediction_provenance(wildcards.model, wildcards.dataset))


def upstream_of_evaluation(wildcards):
    return settings_hash(segmentation_provenance(wildcards.model, wildcards.dataset))


def upstream_of_report():
    return settings_hash([segmentation_provenance(model, name) for model in active_models()
                          for name in prediction_datasets()])
