"""CI integrations: programs that CI systems call, talking to the server through `gpufleet.client`."""
