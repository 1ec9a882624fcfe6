"""polyhead.lowlight: low-light object detection with FeatEnHancer and torchvision detectors.

polyhead-lowlight fit                       # generated dark scenes, FCOS + FeatEnHancer
polyhead-lowlight test                      # COCO mAP / AP50 / AP75 / APs/m/l -> metrics.json
polyhead-lowlight predict photo.jpg         # predictions.json (COCO results) + drawn images
"""
