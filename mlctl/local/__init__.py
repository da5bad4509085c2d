"""``mlctl local``: the whole platform on one machine (moto's AWS, a local SageMaker Runtime with
data capture, a local API Gateway in front of the real Lambda handler, model-server processes)."""
