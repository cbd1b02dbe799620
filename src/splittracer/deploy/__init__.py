"""Starting participants on devices: the SSH implementation of the controller's Deployer interface."""
