"""Applications built on needle, as in the course's ``apps/`` folder: ``simple_ml``,
``mlp_resnet``, the Fashion-MNIST ``demo``. Import the submodule you need."""
