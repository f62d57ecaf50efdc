"""Fields every collection config shares; one file per pipeline sets `pipeline`."""
import ml_collections


def get_base_config(pipeline: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.pipeline = pipeline  # one of the simulator's pipelines (jaxmtf.sim.registry: Environment.pipelines)
    config.simulator = "mtf"  # "mtf" (fusion sessions) or "notifications" (daily counts), (jaxmtf.sim.registry)
    config.seed = 0  # seed of users, behaviour noise and online training
    config.num_users = 2_000  # sessions logged (non-buffer pipelines)
    config.env = ml_collections.ConfigDict()  # simulator parameter overrides, e.g. {"slate_size": 8}
    config.expert = "switch"  # expert of expert/noisy_expert/mixed: "switch" (hand-written) or "online"
    config.noise_sigma = 0.3  # std of the Gaussian around the expert (noisy_expert, mixed)
    config.box_half_width = 0.15  # IntegratedRL-MTF exploration box around the baseline
    config.epsilon = 0.3  # notifications, epsilon_greedy: probability of a uniform count instead of the rule's
    config.temperature = 1.0  # notifications, softmax: temperature of softmax(-(a - rule(s))^2 / temperature)
    config.eval_users = 2_000  # fresh users that measure the behaviour policy's true value
    config.eval_discount = 0.99  # discount of the reported discounted return
    # The online behavioural agent (final_buffer, concurrent, imitation, expert="online").
    online = config.online = ml_collections.ConfigDict()
    online.algo = "td3"  # td3 or ddpg (a launch/configs name)
    online.learner_algo = "td3"  # the concurrent offline learner (a launch/configs name)
    online.num_envs = 64  # users simulated in parallel
    online.iterations = 3_000  # environment steps per user slot; the buffer keeps all num_envs * iterations
    online.updates_per_iteration = 4  # gradient updates per iteration of all users
    online.batch_size = 256  # transitions per update
    online.exploration_sigma = 0.1  # sfujim/TD3's expl_noise
    online.random_iterations = 200  # uniform random actions first (sfujim's start_timesteps)
    online.log_every = 500  # iterations per compiled chunk and progress line
    return config
