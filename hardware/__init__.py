"""Device simulators (gas detectors, wind stations, tri-spectrum cameras) and the test bench.

Each simulated device is its own MQTT client, driven by a scenario on a real or simulated clock.
"""
