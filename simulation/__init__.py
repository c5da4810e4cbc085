"""3D pipeline model, gas-cloud and what-if simulation for responders (issue 5)."""
