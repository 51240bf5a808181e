"""How many NATS nodes a dev stack runs: as asked, else as its state dir was created."""

import json

import pytest

from autopay_devtools.devstack import RUN_FILE, nats_cluster_size


def test_a_fresh_state_dir_runs_what_is_asked_or_one_server(tmp_path):
    assert nats_cluster_size(tmp_path, None) == 1
    assert nats_cluster_size(tmp_path, 3) == 3
    assert nats_cluster_size(tmp_path, 1) == 1


def test_a_state_dir_keeps_its_size(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"nats_cluster": 3}))
    assert nats_cluster_size(tmp_path, None) == 3
    assert nats_cluster_size(tmp_path, 3) == 3
    with pytest.raises(ValueError, match="3-node NATS"):
        nats_cluster_size(tmp_path, 1)


def test_a_state_dir_from_before_clusters_is_one_server(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"nats_port": 1234}))
    assert nats_cluster_size(tmp_path, None) == 1
    with pytest.raises(ValueError, match="1-node NATS"):
        nats_cluster_size(tmp_path, 3)


@pytest.mark.parametrize("size", [0, 2, 5])
def test_only_one_server_or_three_nodes(tmp_path, size):
    with pytest.raises(ValueError, match="must be one of"):
        nats_cluster_size(tmp_path, size)
