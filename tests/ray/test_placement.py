"""Resources asked of Ray, computed without a cluster: a member's Placement, the trials of a
search (tuning.plan_trials)."""

from __future__ import annotations

from committee.distributed.cluster import Placement, floor_resource


def test_a_placement_asks_ray_train_and_ray_tasks_for_the_same_resources():
    cpu = Placement(cpus=0.6666, gpus=0.0)
    assert cpu.task_resources() == {"num_cpus": 0.6666}
    config = cpu.scaling_config()
    assert (config.num_workers, config.use_gpu) == (1, False)
    assert config.resources_per_worker == {"CPU": 0.6666}
    gpu = Placement(cpus=4.0, gpus=0.5)
    assert gpu.task_resources() == {"num_cpus": 4.0, "num_gpus": 0.5}
    assert gpu.scaling_config().resources_per_worker == {"CPU": 4.0, "GPU": 0.5}
    assert floor_resource(2 / 3) == 0.6666
